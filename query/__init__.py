"""Read models rebuilt from the log at read time, behind QueryService."""
