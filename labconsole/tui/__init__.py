"""The console UI (Textual). The only package that imports Textual; it reads sessions, never does I/O on its loop."""
