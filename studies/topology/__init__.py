"""The topology study: topological features of the weights over training, and early prediction of the final loss
(see README.md for the commands, report.md for the results)."""
