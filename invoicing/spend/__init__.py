"""Spend alerts and spend caps (invoicing/SPEND.md): the layer that owns accrued cost watches it.

- ``selectors``: the accrued usage cost of a current period, the alerts, firings and cap, the sweep's due list;
- ``services``: alerts and caps managed, the evaluation (alerts fired once per period and threshold, caps
  enforced through ``Customer.spend_blocked_since``, which ingestion reads), the cap lifted;
- ``mail``: the e-mail of a fired alert.
"""
