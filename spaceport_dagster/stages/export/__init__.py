"""Stage 3: sparse_reconstruction to an undistorted PINHOLE COLMAP export, verified by reading it back."""
