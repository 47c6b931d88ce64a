"""The product's services. None of them imports another; all of them import `maft`."""
