"""What the app's preset menu says of each named recipe (the recipes themselves: afm.recipe.PRESETS)."""

from __future__ import annotations

# What the app's preset menu says about each, and what a preset asks of the user beyond its numbers.
# Short enough to be read whole in the menu on an 800 px screen; PRESET_HELP says the rest.
PRESET_LABELS = {"auto": "Sized to your data (auto)", "quick": "Quick (k = 16)",
                 "paper": "Paper (k = 256)", "fast": "Fast (k = 128, 2 steps)"}
PRESET_HELP = ("Sized to your data: k, batch, Adam and L2 on the embeddings chosen from the data's rows and fields "
               "(the paper's recipe on Frappe and ml-tag), the choice said with why. "
               "Quick: k = 16, seconds on a CPU, for the bundled samples. Paper: the authors' Frappe recipe, k = 256, "
               "batch 128. Fast: k = 128, an FM and then the AFM started from it. Tune: an Optuna study that searches "
               "the settings on the validation rows.")
PRESET_RECIPES = {"fast": "Fast is a two-step recipe: an FM (15 epochs), then the AFM started from it. *Train the "
                          "FM first* runs both on one click; or pick a trained FM under *Start from*. On Frappe on "
                          "2 CPU cores: valid RMSE 0.32 after about 2 minutes in all.",
                  "auto": "Sized AFM is a two-step recipe: an FM of the same settings, then the AFM started from it "
                          "as that FM (p = P, uniform attention), which a few epochs then improve."}
