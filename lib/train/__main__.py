from lib.train.ship import main

raise SystemExit(main())
