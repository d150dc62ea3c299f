"""Local stand-in for Azure Machine Learning and Event Grid (development and tests only; never deployed)."""
