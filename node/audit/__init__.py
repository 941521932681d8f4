"""The auditor service (floor 4, DESIGN.md §8): an aiohttp JSON API over the exchange log and
a page that verifies what it shows; tokens with roles and zones; an access log of every read."""
