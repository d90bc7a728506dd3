"""The application: the kernel and its run session, the backtest and paper shells, sweeps,
walk-forward, training and evaluation of scenarios, and the command line."""
