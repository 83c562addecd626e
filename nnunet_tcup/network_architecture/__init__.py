"""network_architecture"""
