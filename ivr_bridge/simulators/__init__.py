"""The platforms' side of each dialect: client encoders the simulator and the tests drive."""
