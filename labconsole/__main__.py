from labconsole.cli import main

raise SystemExit(main())
