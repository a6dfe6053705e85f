"""Paths that no DICOMweb lane takes: the routes answer them (a redirect, a 404)."""

NOT_A_RESOURCE = [
    "",
    "/",
    "studies",
    "/studies/",  # the routes redirect it
    "//studies",
]
