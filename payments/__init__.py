"""Collecting money through a payment provider (Stripe first): the provider seam, merchants' provider
credentials, customers' payment methods and hosted payment sessions (README.md)."""
