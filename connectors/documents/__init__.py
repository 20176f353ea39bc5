"""Business documents (PDF, scans and images, DOCX, HTML, plain text) read into text.

:mod:`connectors.documents.read` turns one file's bytes into its text, page count and the method
that got the text out (``pdf_text``, ``ocr``, ``docx``, ``html``, ``text``), or says why it could
not (:class:`connectors.documents.read.UnreadableDocument`, whose ``rule`` names the reason for
the dead letters). :mod:`connectors.documents.ocr` is the one place Tesseract is called.
Libraries (pypdf, Pillow, pytesseract, python-docx) are imported when a document needs them.
"""
