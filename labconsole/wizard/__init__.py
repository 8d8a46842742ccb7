"""First-time setup: the SetupWizard (the console's Setup screen and `labconsole init` share it)."""
