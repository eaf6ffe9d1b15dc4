"""collaborative vectors"""
