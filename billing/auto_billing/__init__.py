"""Agency auto-billing (flow C): plan grants out of the partner's pool, overdrafts, and the purchases that refill
the pool (engine), with the cheapest-combination package optimiser."""
