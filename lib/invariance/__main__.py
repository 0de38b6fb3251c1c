"""``python -m lib.invariance NAME --ship``: see :mod:`lib.invariance.ship`."""

from lib.invariance.ship import main

raise SystemExit(main())
