"""Where bars come from: files with their validation and resampling, the synthetic market,
the shipped data sets, and the MQTT transport with its feed guard. Imports the bottom layer
only."""
