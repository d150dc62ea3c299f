// Azure ML's run and model events to the lifecycle function (hooks/postdeploy.*, in the workspace's group).
// Run events are filtered to tuneflow's experiment; ModelRegistered carries no experiment, so the function
// itself ignores models tuneflow did not make (by their tuneflow.run_id tag).
param mlTopicName string
param functionAppId string
param experiment string

resource topic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' existing = {
  name: mlTopicName
}

var destination = {
  endpointType: 'AzureFunction'
  properties: { resourceId: '${functionAppId}/functions/lifecycle', maxEventsPerBatch: 1 }
}

resource runs 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = {
  parent: topic
  name: 'tuneflow-runs'
  properties: {
    destination: destination
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.MachineLearningServices.RunCompleted'
        'Microsoft.MachineLearningServices.RunStatusChanged'
      ]
      advancedFilters: [{ operatorType: 'StringIn', key: 'data.experimentName', values: [experiment] }]
    }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
  }
}

resource models 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = {
  parent: topic
  name: 'tuneflow-models'
  properties: {
    destination: destination
    eventDeliverySchema: 'EventGridSchema'
    filter: { includedEventTypes: ['Microsoft.MachineLearningServices.ModelRegistered'] }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
  }
}
