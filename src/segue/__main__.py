from segue.cli.main import main

raise SystemExit(main())
