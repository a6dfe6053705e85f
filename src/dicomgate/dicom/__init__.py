"""DICOM helpers with no business logic: Part-10 handling, header reads, UIDs."""
