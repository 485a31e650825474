"""The kie.ai uploader's CDK app: one stack that wires one construct per concern."""
