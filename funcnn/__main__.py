from funcnn.app.cli import main

raise SystemExit(main())
