"""NeuroCare-BIDS: a BIDS-App for epileptic seizure detection in scalp EEG."""

__version__ = "0.1.0"
CODE_URL = "https://github.com/neurocare-bids/neurocare-bids"
