"""The demo store day: enrol shoppers, let them in, shop, exit and pay."""
