"""What instruments say and are, no I/O: ranges, accuracy, models and protocols shared by drivers and emulators."""
