"""Trial-based search: strategies that propose architectures of a discrete space as
keras-tuner Oracles, and the trial runner that trains and scores one child per trial."""
