"""dialect-decoupling: decouple Arabic dialect representations from MSA during LoRA fine-tuning.

The backend is a plain library (no Streamlit): the pages and the CLI (`python -m backend`)
both call it, so everything the app does can be scripted and tested without a browser.
"""

__version__ = "0.1.0"
