"""core/cluster"""
