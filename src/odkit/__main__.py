from odkit.cli import main

raise SystemExit(main())
