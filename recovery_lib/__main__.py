from recovery_lib.cli import main

raise SystemExit(main())
