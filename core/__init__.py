"""The ground both the shared layer (lab, datamodules) and the backends stand on: the one error type users see
(errors), atomic writes (io), torch and TensorFlow in one process (frameworks), and how a command line ends (cli)."""
