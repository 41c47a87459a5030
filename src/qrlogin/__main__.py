from qrlogin.cli import main

raise SystemExit(main())
