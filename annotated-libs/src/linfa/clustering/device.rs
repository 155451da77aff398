//! DBSCAN on a device (in progress).
