from ivr_bridge.cli import main

raise SystemExit(main())
