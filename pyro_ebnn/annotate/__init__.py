"""The annotation loop ([001] Fig. 1, step 3): which training images to show (selection), the
regions to propose (candidate regions), and the page a person answers on (server)."""
