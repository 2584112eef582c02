"""Training: the one loop, ``run_trial`` (poison stage -> probes -> train -> record), the
setup it shares with lr-find, and the probes. Imports results and the components below it."""
