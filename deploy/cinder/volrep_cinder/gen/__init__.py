"""Generated gRPC stubs of volrep's APIs: run deploy/cinder/generate.sh; do not edit."""
