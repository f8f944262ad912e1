"""core/raft"""
