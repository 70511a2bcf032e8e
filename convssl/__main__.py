from convssl.cli import main

raise SystemExit(main())
