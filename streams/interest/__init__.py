"""interest"""
