"""smithers: durable, human-in-the-loop workflows written as component trees."""
