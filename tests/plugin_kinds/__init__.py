"""Kinds defined outside the product, the way a plugin package defines them."""
