"""What every tier of the tests shares: free ports, waiting with a deadline, the PostgreSQL
schema fixture's helpers, and the real peers (`tests.support.peers`: DCMTK, Orthanc, PixelMed,
an MLLP listener, a throwaway PKI)."""
