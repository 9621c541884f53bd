"""The model side of nlpipe: loading checkpoints, choosing devices, generating. No spaCy here."""
