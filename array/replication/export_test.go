package replication

// LeftWarnEvery is leftWarnEvery, for the tests of package replication_test.
const LeftWarnEvery = leftWarnEvery
