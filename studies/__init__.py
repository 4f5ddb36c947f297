"""Research done with golf, each study's code, spec and report in one folder (topology/)."""
