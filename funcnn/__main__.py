from funcnn.cli import main

raise SystemExit(main())
