"""Make the README's figure (the chapter "Simulating low-dose CT" in one picture).

    make readme-figure
"""

from pathlib import Path

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt

from lib import ct
from lib.plotting import show_mu

truth = ct.thorax_phantom(seed=0)
site = ct.lung_lesion_site(truth, 9.0, 1.5, seed=0)
truth = ct.insert_lesion(truth, site, 9.0, 0.007, 1.5)
scanner = ct.Scanner()
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
show_mu(axes[0], truth, ct.LUNG_WINDOW, "phantom with a 9 mm lung lesion")
show_mu(axes[1], scanner.scan(truth, 1e5, seed=1), ct.LUNG_WINDOW, "normal dose, I0 = 1e5")
show_mu(axes[2], scanner.scan(truth, 1.25e4, seed=2), ct.LUNG_WINDOW, "low dose, I0 = 1.25e4")
fig.tight_layout()
out = Path(__file__).with_name("readme_figure.png")
fig.savefig(out, dpi=80)
print(f"written {out}")
