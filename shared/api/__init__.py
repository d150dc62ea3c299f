"""The HTTP front door as plain functions: requests and responses without the Functions runtime."""
