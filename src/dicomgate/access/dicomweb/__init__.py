"""DICOMweb over the archive: QIDO-RS, WADO-RS, WADO-URI (STOW-RS is ``sources.stow``)."""
